"""Pure scheduling: cron, local-time rules, firing streams and the firing engine.

Nothing here touches a server or the clock: functions take options, an aware instant and a
state snapshot, and return values. The beat (``gim_tasks.runtime``) does the I/O.
"""
