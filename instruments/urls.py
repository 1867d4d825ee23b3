from django.urls import path

from instruments import views

urlpatterns = [
    path("accounts/", views.account_list, name="account-list"),
    path("accounts/new/", views.account_edit, name="account-create"),
    path("accounts/<int:account_id>/edit/", views.account_edit, name="account-edit"),
    path("accounts/<int:account_id>/kite/login/", views.kite_login_start, name="kite-login"),
    path("kite/callback/", views.kite_callback, name="kite-callback"),
]
