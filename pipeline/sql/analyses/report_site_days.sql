-- The report: IT and facility kWh and PUE per site and local day.
select site_id, local_date, minutes, it_energy_kwh, facility_energy_kwh, pue
from fct_site_efficiency_daily
order by site_id, local_date
