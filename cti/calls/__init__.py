"""The call model: raw AMI events in, the contact center's call events out."""
