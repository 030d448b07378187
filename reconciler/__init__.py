"""zohosi-reconciler: keeps Zoho CRM deals and D-Tools SI projects in agreement."""

__version__ = "0.1.0"
