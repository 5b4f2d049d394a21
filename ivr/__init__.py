"""IVR: caller self-service flows (``config/ivr/*.yaml``) run by a pure interpreter over
AsyncAGI and FastAGI. Empty until the IVR issue; the call model already reports
``ivr_entered`` and ``digits`` for calls in dialplan menus and AGI scripts."""
