from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.utils.html import format_html
from django.views.decorators.debug import sensitive_post_parameters

from instruments import services
from instruments.models import BrokerAccount, Instrument, Underlying
from trading_site import clock


class UpcomingExpiryFilter(admin.SimpleListFilter):
    """The next expiries by date: a plain date filter would list every expiry ever seen."""

    title = "expiry"
    parameter_name = "expiry"
    shown = 12

    def lookups(self, request, model_admin):
        expiries = (
            Instrument.objects.filter(expiry__gte=clock.today())
            .order_by("expiry")
            .values_list("expiry", flat=True)
            .distinct()[: self.shown]
        )
        return [(expiry.isoformat(), expiry.strftime("%d %b %Y")) for expiry in expiries]

    def queryset(self, request, queryset):
        return queryset.filter(expiry=self.value()) if self.value() else queryset


@admin.register(Instrument)
class InstrumentAdmin(admin.ModelAdmin):
    """Read only: the master belongs to Kite and changes only through sync_instruments."""

    list_display = (
        "tradingsymbol",
        "exchange",
        "name",
        "instrument_type",
        "expiry",
        "strike",
        "lot_size",
        "tick_size",
        "instrument_token",
        "underlying",
        "active",
    )
    list_filter = ("active", "exchange", "segment", "instrument_type", UpcomingExpiryFilter, "underlying")
    # See get_search_results: prefix searches on indexed columns, never a table scan.
    search_fields = ("tradingsymbol", "name", "instrument_token")
    search_help_text = "A tradingsymbol or name prefix (NIFTY26NOV), or an instrument token."
    list_select_related = ("underlying",)
    list_per_page = 100
    # With 100,000 rows, counting the unfiltered table on every filtered page is wasted work.
    show_full_result_count = False
    ordering = ("exchange", "tradingsymbol")

    def get_search_results(self, request, queryset, search_term):
        # Kite's symbols and names are upper case, so an upper-cased, case-sensitive prefix
        # match finds the same rows as Django's default UPPER(...) LIKE, and uses the indexes.
        term = search_term.strip().upper()
        if not term:
            return queryset, False
        # isascii: int() refuses digits such as "²" that str.isdigit accepts.
        if term.isascii() and term.isdigit():
            return queryset.filter(instrument_token=int(term)), False
        return queryset.filter(Q(tradingsymbol__startswith=term) | Q(name__startswith=term)), False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(Underlying)
class UnderlyingAdmin(admin.ModelAdmin):
    list_display = (
        "symbol",
        "spot_instrument",
        "derivatives_exchange",
        "strike_step",
        "strikes_each_side",
        "expiries_to_stream",
        "risk_free_rate",
        "dividend_yield",
        "enabled",
        "store_ticks",
    )
    list_editable = ("strikes_each_side", "expiries_to_stream", "enabled", "store_ticks")
    list_filter = ("enabled", "derivatives_exchange")
    list_select_related = ("spot_instrument",)
    search_fields = ("symbol",)
    autocomplete_fields = ("spot_instrument",)
    fieldsets = (
        (None, {"fields": ("symbol", "spot_instrument", "derivatives_exchange", "enabled", "store_ticks")}),
        ("Streaming", {"fields": ("strike_step", "strikes_each_side", "expiries_to_stream")}),
        ("Pricing", {"fields": ("risk_free_rate", "dividend_yield")}),
    )

    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        linked = services.underlying_link_instruments(underlying=obj)
        self.message_user(request, f"{obj.symbol}: {linked} futures and options linked.", messages.INFO)


class BrokerAccountAdminForm(forms.ModelForm):
    api_secret = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Stored encrypted. Leave blank to keep the current secret.",
    )

    class Meta:
        model = BrokerAccount
        fields = ("user", "label", "kind", "api_key", "api_secret", "is_data_account")

    def clean_api_secret(self) -> str:
        # A blank box means "keep": the form never shows the stored secret to edit.
        return self.cleaned_data["api_secret"] or (self.instance.api_secret if self.instance.pk else "")


@admin.register(BrokerAccount)
class BrokerAccountAdmin(admin.ModelAdmin):
    form = BrokerAccountAdminForm
    list_display = (
        "label",
        "user",
        "kind",
        "api_key",
        "masked_api_secret",
        "token_state_display",
        "access_token_expires_at",
        "is_data_account",
        "kite_login_link",
    )
    list_filter = ("kind", "is_data_account")
    list_select_related = ("user",)
    search_fields = ("label", "user__username", "kite_user_id")
    readonly_fields = (
        "masked_api_secret",
        "masked_access_token",
        "token_state_display",
        "access_token_expires_at",
        "kite_user_id",
        "kite_user_name",
        "kite_login_link",
        "created_at",
    )
    actions = ("make_data_account",)

    @method_decorator(sensitive_post_parameters("api_secret"))
    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        return super().changeform_view(request, object_id, form_url, extra_context)

    @admin.display(description="API secret")
    def masked_api_secret(self, obj: BrokerAccount) -> str:
        return obj.masked_api_secret or "—"

    @admin.display(description="Access token")
    def masked_access_token(self, obj: BrokerAccount) -> str:
        return obj.masked_access_token or "—"

    @admin.display(description="Session")
    def token_state_display(self, obj: BrokerAccount) -> str:
        return obj.get_token_state_display()

    @admin.display(description="Kite login")
    def kite_login_link(self, obj: BrokerAccount) -> str:
        if obj.pk is None or obj.kind != BrokerAccount.Kind.KITE:
            return "—"
        # The flow stores the token on the account of whoever logs in, so only its owner can use it.
        return format_html('<a href="{}">Connect to Kite</a> (as {})', reverse("kite-login", args=[obj.pk]), obj.user)

    @admin.action(description="Make the selected account the data account (feeds the ticker)")
    def make_data_account(self, request: HttpRequest, queryset: QuerySet[BrokerAccount]) -> None:
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one account.", messages.ERROR)
            return
        account = queryset.get()
        try:
            services.broker_account_set_data_account(account=account)
        except ValueError as error:
            self.message_user(request, str(error), messages.ERROR)
            return
        self.message_user(request, f"{account} now feeds the ticker.", messages.SUCCESS)
