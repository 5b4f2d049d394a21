"""Automatic call distribution: which waiting caller goes to which agent, and Asterisk made
to do it. A pure routing core (``router``, ``agents``, ``strategies``, ``config``) fed the
call model's events and the time; state in memory or Redis (``state``, ``redis_state``);
live queue figures and waiting-time estimates (``figures``, ``estimate``); a Twisted driver
(``driver``) that turns decisions into AMI actions."""
