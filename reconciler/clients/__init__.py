"""HTTP clients for Zoho CRM and D-Tools SI, behind one retrying choke point (``http``)."""
