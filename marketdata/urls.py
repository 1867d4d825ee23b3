from django.urls import path

from marketdata.views import chain, dashboard, watchlist

urlpatterns = [
    path("", dashboard.dashboard, name="home"),
    path("chain/", chain.default_chain, name="chain-default"),
    path("chain/<str:symbol>/", chain.chain_page, name="chain"),
    path("watchlist/", watchlist.watchlist_page, name="watchlist"),
    path("watchlist/search/", watchlist.watchlist_search, name="watchlist-search"),
    path("watchlist/add/", watchlist.watchlist_add, name="watchlist-add"),
    path("watchlist/<int:token>/remove/", watchlist.watchlist_remove, name="watchlist-remove"),
]
