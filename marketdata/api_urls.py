"""The app's REST endpoints, mounted under /api/v1/ by trading_site.urls.

`instruments/` and `instruments/<token>/` belong to instruments.api_urls; this app adds only the
`bars/` and `ticks/` beneath an instrument. Their token is taken as a string and checked by the view,
so that a malformed one (-1, abc) gets the API's JSON 404 rather than Django's HTML page.
"""

from django.urls import path

from marketdata.apis import FeedStatusAPI, InstrumentBarsAPI, InstrumentTicksAPI, QuotesAPI
from marketdata.option_apis import ChainAPI, ChainHistoryAPI, GreeksAPI

urlpatterns: list = [
    path("quotes/", QuotesAPI.as_view(), name="api-quotes"),
    path("instruments/<str:token>/bars/", InstrumentBarsAPI.as_view(), name="api-instrument-bars"),
    path("instruments/<str:token>/ticks/", InstrumentTicksAPI.as_view(), name="api-instrument-ticks"),
    path("chains/<str:symbol>/", ChainAPI.as_view(), name="api-chain"),
    path("chains/<str:symbol>/history/", ChainHistoryAPI.as_view(), name="api-chain-history"),
    path("greeks/", GreeksAPI.as_view(), name="api-greeks"),
    path("feed/status/", FeedStatusAPI.as_view(), name="api-feed-status"),
]
