-- The report: p95 latency per service, site and UTC hour (the mart repeats a service's latency on each team row; max() takes that one value).
select
    site_id,
    service,
    timezone('UTC', hour_utc) as hour_utc,
    sum(requests) as requests,
    max(latency_p95_ms) as latency_p95_ms
from fct_energy_per_request_hourly
group by all
order by site_id, service, hour_utc
