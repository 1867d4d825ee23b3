"""Chain snapshots in the admin: read-only history, written only by the refresh task."""

from __future__ import annotations

from django.contrib import admin

from marketdata.models import ChainSnapshot, WatchlistEntry


@admin.register(ChainSnapshot)
class ChainSnapshotAdmin(admin.ModelAdmin):
    list_display = ("underlying", "expiry", "taken_at", "spot", "atm_iv", "pcr_oi", "max_pain", "total_gex")
    list_filter = ("underlying", "expiry")
    list_select_related = ("underlying",)
    date_hierarchy = "taken_at"
    ordering = ("-taken_at",)
    show_full_result_count = False  # a count of a long history costs more than the page

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


# -- Watchlist --


@admin.register(WatchlistEntry)
class WatchlistEntryAdmin(admin.ModelAdmin):
    list_display = ("user", "instrument", "added_at")
    list_filter = ("user",)
    list_select_related = ("user", "instrument")
    search_fields = ("user__username", "instrument__tradingsymbol")
    # A select of 100,000 instruments would not load: pick by id (the token search is on the page).
    raw_id_fields = ("instrument",)
    date_hierarchy = "added_at"
    ordering = ("user", "-added_at")
