"""The batch ZIP: written streaming, in the provider's entry order."""
