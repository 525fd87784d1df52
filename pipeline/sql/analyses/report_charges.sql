-- The report: chargeback per team and site, every month of the period summed.
select
    team,
    site_id,
    any_value(cost_center) as cost_center,
    sum(requests) as requests,
    sum(facility_energy_kwh) as facility_energy_kwh,
    sum(energy_cost_usd) as energy_cost_usd,
    sum(carbon_cost_usd) as carbon_cost_usd,
    sum(capex_share_usd) as capex_share_usd,
    sum(opex_share_usd) as opex_share_usd,
    sum(total_usd) as total_usd,
    sum(shared_facility_energy_kwh) as shared_facility_energy_kwh
from fct_chargeback_monthly
group by team, site_id
order by team, site_id
