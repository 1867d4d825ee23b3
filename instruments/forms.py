from django import forms

from instruments.models import BrokerAccount


class BrokerAccountForm(forms.Form):
    """A user's own Kite app: its label, API key and secret (the secret is write-only)."""

    label = forms.CharField(max_length=64)
    api_key = forms.CharField(max_length=64, label="API key")
    api_secret = forms.CharField(
        max_length=128,
        required=False,
        label="API secret",
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Stored encrypted. Leave blank to keep the current secret.",
    )

    def __init__(self, *args, user, account: BrokerAccount | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.user = user
        self.account = account
        if account is None:
            self.fields["api_secret"].required = True
            self.fields["api_secret"].help_text = "Stored encrypted; never shown again."

    def clean_label(self) -> str:
        label = self.cleaned_data["label"].strip()
        clash = BrokerAccount.objects.filter(user=self.user, label=label)
        if self.account is not None:
            clash = clash.exclude(pk=self.account.pk)
        if clash.exists():
            raise forms.ValidationError("You already have an account with this label.")
        return label

    def clean_api_key(self) -> str:
        return self.cleaned_data["api_key"].strip()
