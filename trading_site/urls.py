from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from instruments.api_urls import urlpatterns as instrument_api
from marketdata.api_urls import urlpatterns as marketdata_api
from trading_site.auth_api import AuthTokenView, exempt_from_login_page

handler404 = "trading_site.api.not_found"
handler500 = "trading_site.api.server_error"

admin.site.site_header = "Options desk administration"
admin.site.site_title = "Options desk"

api_v1 = [
    path("auth/token/", AuthTokenView.as_view(), name="api-auth-token"),
    *instrument_api,
    *marketdata_api,
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/v1/", include(exempt_from_login_page(api_v1))),
    # The schema and its docs page describe the API, not anyone's data: open to all.
    path("api/schema/", login_not_required(SpectacularAPIView.as_view()), name="api-schema"),
    path("api/docs/", login_not_required(SpectacularSwaggerView.as_view(url_name="api-schema")), name="api-docs"),
    path("", include("marketdata.urls")),
    path("", include("instruments.urls")),
]
