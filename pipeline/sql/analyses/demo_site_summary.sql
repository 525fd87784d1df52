-- `microdc demo`: one row per site over the run (pipeline.embedded.demo.SiteRow, by column name).
with eff as (
    select site_id, sum(requests) as requests, sum(it_energy_kwh) as it_kwh,
           sum(facility_energy_kwh) as node_facility_kwh
    from fct_site_efficiency_daily group by site_id
),
charge as (
    select site_id, sum(total_usd) as chargeback_usd, sum(facility_energy_kwh) as facility_kwh,
           sum(operational_kgco2e + embodied_kgco2e) as kgco2e
    from fct_chargeback_monthly group by site_id
),
meter as (
    select site_id, sum(meter_facility_energy_kwh) as meter_kwh,
           sum(design_pue_facility_energy_kwh) as design_kwh,
           sum(node_facility_energy_kwh) as node_kwh,
           sum(shared_facility_energy_kwh) as shared_kwh,
           sum(meter_below_nodes_minutes) as below_minutes
    from fct_meter_reconciliation_monthly group by site_id
)
select eff.site_id,
       coalesce(eff.requests, 0) as requests,
       coalesce(charge.facility_kwh, 0) as facility_kwh,
       eff.node_facility_kwh / nullif(eff.it_kwh, 0) as pue,
       charge.facility_kwh * 1000 / nullif(eff.requests, 0) as wh_per_request,
       charge.kgco2e * 1000 / nullif(eff.requests, 0) as gco2e_per_request,
       roi.latency_p95_ms as p95_latency_ms,
       coalesce(charge.chargeback_usd, 0) as chargeback_usd,
       roi.pilot_days / 30.4375 * roi.cloud_capacity_usd_per_month as cloud_usd,
       roi.pilot_days / 30.4375 * roi.cloud_usd_per_month as cloud_used_usd,
       roi.capacity_roi_12m_pct as roi_12m_pct,
       roi.capacity_payback_months as payback_months,
       coalesce(meter.meter_kwh, 0) as meter_kwh,
       coalesce(meter.design_kwh, 0) as design_pue_kwh,
       coalesce(meter.node_kwh, 0) as node_rows_kwh,
       coalesce(meter.shared_kwh, 0) as shared_kwh,
       coalesce(meter.below_minutes, 0) as meter_below_nodes_minutes
from eff
left join charge using (site_id)
left join meter using (site_id)
left join fct_roi_site as roi using (site_id)
order by eff.site_id
