"""Process wiring: configuration, command line, and the app that joins the parts."""
