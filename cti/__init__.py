"""Computer-telephony integration: the AMI codec and client, and the call model."""
