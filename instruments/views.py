"""Pages of the instruments app: home, broker accounts and the Kite login flow."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_GET, require_http_methods

from instruments import selectors, services
from instruments.forms import BrokerAccountForm
from instruments.models import BrokerAccount
from trading_site import clock

# The session key that ties Kite's redirect back to the login this browser started.
PENDING_KITE_LOGIN = "pending_kite_login"
# Kite's request token lasts a few minutes; a callback later than this is refused.
KITE_LOGIN_WINDOW_SECONDS = 15 * 60


@require_GET
def account_list(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "instruments/accounts.html",
        {
            "accounts": selectors.broker_accounts_for_user(request.user),
            "callback_url": request.build_absolute_uri(reverse("kite-callback")),
        },
    )


@sensitive_post_parameters("api_secret")
@require_http_methods(["GET", "POST"])
def account_edit(request: HttpRequest, account_id: int | None = None) -> HttpResponse:
    account = _own_account(request, account_id) if account_id is not None else None
    form = BrokerAccountForm(request.POST or None, user=request.user, account=account)
    if request.method == "POST" and form.is_valid():
        account = services.broker_account_save(user=request.user, account=account, **form.cleaned_data)
        messages.success(request, f"Saved {account.label}.")
        return redirect("account-list")
    return render(request, "instruments/account_form.html", {"form": form, "account": account})


@require_GET
def kite_login_start(request: HttpRequest, account_id: int) -> HttpResponse:
    account = _own_account(request, account_id)
    try:
        login_url = services.kite_login_url(account=account)
    except services.KiteLoginError as error:
        messages.error(request, str(error))
        return redirect("account-list")
    request.session[PENDING_KITE_LOGIN] = {"account_id": account.pk, "started_at": clock.now().timestamp()}
    return redirect(login_url)


@sensitive_variables("request_token")
@require_GET
def kite_callback(request: HttpRequest) -> HttpResponse:
    """Where Kite sends the browser back: ?request_token=...&action=login&status=success."""
    pending = request.session.pop(PENDING_KITE_LOGIN, None)
    if not pending or clock.now().timestamp() - pending["started_at"] > KITE_LOGIN_WINDOW_SECONDS:
        messages.error(
            request,
            "No Kite login was in progress from this browser, or it took longer than 15 minutes. "
            "Start again with 'Log in to Kite' on the account.",
        )
        return redirect("account-list")
    account = _own_account(request, pending["account_id"])

    status = request.GET.get("status", "")
    request_token = request.GET.get("request_token", "").strip()
    if status and status != "success":
        messages.error(request, f"Kite did not complete the login (status: {status[:40]}). Try again.")
    elif not request_token:
        messages.error(
            request,
            "Kite came back without a request_token. "
            "Check that your Kite app's redirect URL is this page, and try again.",
        )
    else:
        try:
            account = services.broker_account_session_create(account=account, request_token=request_token)
        except services.KiteLoginError as error:
            messages.error(request, str(error))
        else:
            expiry = account.access_token_expires_at.astimezone(clock.IST)
            messages.success(
                request,
                f"Connected {account.label} to Kite as {account.kite_user_id or 'your user'}; "
                f"the session lasts until {expiry:%d %b %H:%M} IST.",
            )
    return redirect("account-list")


def _own_account(request: HttpRequest, account_id: int) -> BrokerAccount:
    try:
        return selectors.broker_account_for_user(request.user, account_id)
    except BrokerAccount.DoesNotExist:
        # The same answer for "not yours" and "does not exist": ids reveal nothing.
        raise Http404("No such broker account.") from None
