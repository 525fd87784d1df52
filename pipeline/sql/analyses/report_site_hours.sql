-- The report: requests, facility Wh and gCO2e per site and UTC hour (attributed energy, idle excluded).
select
    site_id,
    timezone('UTC', hour_utc) as hour_utc,
    sum(requests) as requests,
    sum(facility_energy_wh) as facility_energy_wh,
    sum(operational_gco2e + embodied_gco2e) as gco2e
from fct_energy_per_request_hourly
group by all
order by site_id, hour_utc
