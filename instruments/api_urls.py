"""The app's REST endpoints, mounted under /api/v1/ by trading_site.urls.

Path ids are taken as any text and checked by the view, so that a malformed one (`-1`, `abc`)
gets the API's JSON 404 rather than the site's HTML page.
"""

from django.urls import path

from instruments import apis

urlpatterns = [
    path("instruments/", apis.InstrumentListAPI.as_view(), name="api-instrument-list"),
    path("instruments/<str:instrument_token>/", apis.InstrumentDetailAPI.as_view(), name="api-instrument-detail"),
    path("underlyings/", apis.UnderlyingListAPI.as_view(), name="api-underlying-list"),
    path("underlyings/<str:symbol>/", apis.UnderlyingDetailAPI.as_view(), name="api-underlying-detail"),
    path("accounts/", apis.BrokerAccountListAPI.as_view(), name="api-account-list"),
    path("accounts/<str:account_id>/", apis.BrokerAccountDetailAPI.as_view(), name="api-account-detail"),
]
