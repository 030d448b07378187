"""The API lower bound of each benchmarked cycle: the fewest calls the two APIs allow for that work.

Page sizes are the APIs' maxima as DESIGN.md gives them: COQL 2,000 rows, ``PUT /Deals`` 100 records,
SI lists 200 entries. A list call is made even when it comes back empty (that is how one learns it is).
"""

from __future__ import annotations

from math import ceil

__all__ = ["COQL_PAGE", "SI_PAGE", "WRITE_BATCH", "Bound", "pages"]

COQL_PAGE = 2000
WRITE_BATCH = 100
SI_PAGE = 200


def pages(items: int, size: int) -> int:
    """Calls to read ``items`` entries of a paged list: at least one."""
    return max(1, ceil(items / size))


class Bound:
    """Lower bounds, as ``{label: calls}`` so that a miss can be traced to an endpoint."""

    @staticmethod
    def first_cycle(deals: int) -> dict[str, int]:
        """Full read of every flagged deal, one publish each, their ids written back in batches."""
        return {
            "zoho.token": 1,
            "zoho.coql": pages(deals, COQL_PAGE),
            "si.subscribe.list": 1,
            "si.publish": deals,
            "zoho.deals.update": ceil(deals / WRITE_BATCH),
        }

    @staticmethod
    def confirm_imports(deals: int, exported: int, published: int) -> dict[str, int]:
        """SI imported (and exported) every project: re-read our write-back (COQL cannot leave out our own
        edits), list the exports, one detail GET per project (Hours and Revision are not in the list), learn
        the fate of the pending publishes by listing (pending, then imported/failed), write the status and
        fields back in batches, acknowledge each project."""
        return {
            "zoho.coql": pages(deals, COQL_PAGE),
            "si.subscribe.list": pages(exported, SI_PAGE),
            "si.subscribe.get": exported,
            "si.message_statuses": 1 + pages(published, SI_PAGE),
            "zoho.deals.update": ceil(deals / WRITE_BATCH),
            "si.mark_imported": exported,
        }

    @staticmethod
    def reread(deals: int) -> dict[str, int]:
        """A cycle that only re-reads deals modified within the look-back window (no change to write)."""
        return {"zoho.coql": pages(deals, COQL_PAGE), "si.subscribe.list": 1}

    @staticmethod
    def idle() -> dict[str, int]:
        """DESIGN.md: one COQL call and one ``GET /Subscribe/Projects``, nothing else."""
        return {"zoho.coql": 1, "si.subscribe.list": 1}

    @staticmethod
    def si_changes(deals_read: int, messages: int, changed: int, groups: int) -> dict[str, int]:
        """``changed`` projects edited in SI (fields in the detail only): list, detail each, batch the Zoho
        updates, acknowledge each project/change-order group."""
        return {
            "zoho.coql": pages(deals_read, COQL_PAGE),
            "si.subscribe.list": pages(messages, SI_PAGE),
            "si.subscribe.get": changed,
            "zoho.deals.update": ceil(changed / WRITE_BATCH),
            "si.mark_imported": groups,
        }
