-- The report: the UTC hours with requests (first and last) and the requests in them.
select
    timezone('UTC', min(hour_utc)) as first_hour,
    timezone('UTC', max(hour_utc)) as last_hour,
    coalesce(sum(requests), 0) as requests
from fct_energy_per_request_hourly
