"""Did it run, and who hears of it (SPEC O1-O6, A3, A7): the firing ledger, the watchdog,
incidents and their alerts, Prometheus metrics, data freshness and the ETL and aggregation
status, the Timeline, and job notification mails. Execution lives in :mod:`gim_tasks.runtime`;
this package reads what it did and says so."""
