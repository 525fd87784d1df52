-- Grain: one row per site: the pilot (all data so far) and 6 / 12-month projections.
-- ROI of the micro data center against its hyperscale baseline (dim_site.baseline_*), every
-- assumption a column. Micro-DC cost = the chargeback's totals over the pilot (energy at local
-- tariffs, carbon, pro-rated capex and opex). The cloud cost of the same work = CPU core-hours
-- the requests used (dim_service.cpu_ms_per_request) x the baseline's core-hour price + the
-- bytes served x its egress price (egress avoided by serving locally). Operating cost excludes
-- capex; the investment is site + node capex; payback = investment / monthly savings;
-- ROI at N months = (N x monthly savings - investment) / investment. Latency: local quantiles vs
-- the same plus the baseline's round trip. Energy per request: all facility energy (idle and
-- shared infrastructure included: the meter's, as charged) per request here, vs the attributed
-- IT energy at the cloud's PUE plus network transport at 0.001 kWh/GB (Cloud Carbon
-- Footprint); carbon at the baseline grid's intensity.
-- Second, like-for-like baseline: renting the site's provisioned cores in the cloud around the
-- clock (sum of dim_node.cores x the core-hour price x 730.5 h a month) + the same egress; the
-- capacity_* columns are savings, payback and ROI against it.
-- @column pilot_days: days between the first and the last minute with data
-- @column microdc_usd_per_month: chargeback total (all parts) per 30.4375 days of pilot
-- @column operating_usd_per_month: energy + carbon + opex per month (no capex)
-- @column cloud_usd_per_month: core-hours x price + egress GB x price, per month
-- @column egress_gb_per_month: response bytes served locally, GB per month (egress avoided)
-- @column investment_usd: site capex + its nodes' capex
-- @column microdc_usd_6m: projected micro-DC cost over 6 months at the pilot's monthly rate
-- @column cloud_usd_6m: projected cloud cost of the same work over 6 months
-- @column microdc_usd_12m: projected micro-DC cost over 12 months at the pilot's monthly rate
-- @column cloud_usd_12m: projected cloud cost of the same work over 12 months
-- @column monthly_savings_usd: cloud_usd_per_month - operating_usd_per_month
-- @column payback_months: investment / monthly savings (null when there are no savings)
-- @column roi_6m_pct: (6 x monthly savings - investment) / investment x 100
-- @column roi_12m_pct: (12 x monthly savings - investment) / investment x 100
-- @column latency_p95_ms: 95th percentile server latency at the site
-- @column baseline_latency_p95_ms: the same plus the baseline's round trip
-- @column facility_wh_per_request: all facility energy the meter saw (idle and shared infrastructure included) / requests
-- @column baseline_wh_per_request: attributed IT Wh x cloud PUE + 0.001 kWh/GB transport, per request
-- @column gco2e_per_request: (operational + embodied) g, shared infrastructure included / requests
-- @column baseline_gco2e_per_request: baseline Wh per request x baseline grid intensity
-- @column provisioned_cores: CPU cores of the site's nodes (dim_node.cores)
-- @column cloud_capacity_usd_per_month: provisioned cores x core-hour price x 730.5 h + egress GB x price, per month
-- @column capacity_monthly_savings_usd: cloud_capacity_usd_per_month - operating_usd_per_month
-- @column capacity_payback_months: investment / capacity monthly savings (null when there are none)
-- @column capacity_roi_12m_pct: (12 x capacity monthly savings - investment) / investment x 100
{{ config(materialized='table') }}

with

energy as (
    select * from {{ ref('stg_energy_minutes') }}
),

requests as (
    select * from {{ ref('stg_request_log') }}
),

chargeback as (
    select * from {{ ref('fct_chargeback_monthly') }}
),

costed as (
    select * from {{ ref('int_energy_costed_minutes') }}
),

sites as (
    select * from {{ source('fleet', 'dim_site') }}
),

nodes as (
    select * from {{ source('fleet', 'dim_node') }}
),

services as (
    select * from {{ source('fleet', 'dim_service') }}
),

work as (
    select
        e.site_id,
        min(e.window_start) as first_minute,
        max(e.window_start) as last_minute,
        sum(e.requests) as requests,
        sum(e.bytes_out) / 1e9 as egress_gb,
        sum(e.requests * s.cpu_ms_per_request) / 3.6e6 as core_hours,
        sum(e.it_energy_wh) filter (where e.service <> '__idle__') as attributed_it_wh
    from energy as e
    left join services as s using (service, site_id)
    group by e.site_id
),

reconciled as (
    -- the energy and carbon the chargeback charges: the facility meter's energy, shared
    -- infrastructure included (int_energy_costed_minutes)
    select
        site_id,
        sum(facility_energy_kwh) * 1000 as facility_wh,
        sum(operational_kgco2e + embodied_kgco2e) * 1000 as gco2e
    from costed
    group by site_id
),

costs as (
    select
        site_id,
        sum(total_usd) as microdc_usd,
        sum(energy_cost_usd + carbon_cost_usd + opex_share_usd) as operating_usd
    from chargeback
    group by site_id
),

latency as (
    select
        site_id,
        quantile_cont(latency_ms, 0.5) as latency_p50_ms,
        quantile_cont(latency_ms, 0.95) as latency_p95_ms
    from requests
    group by site_id
),

investment as (
    select
        s.site_id,
        s.capex_usd + coalesce(sum(n.capex_usd), 0) as investment_usd,
        coalesce(sum(n.cores), 0) as provisioned_cores
    from sites as s
    left join nodes as n using (site_id)
    group by s.site_id, s.capex_usd
),

per_month as (
    select
        w.site_id,
        (epoch(w.last_minute - w.first_minute) + 60) / 86400 as pilot_days,
        30.4375 / ((epoch(w.last_minute - w.first_minute) + 60) / 86400) as months_factor,
        w.*,
        r.facility_wh,
        r.gco2e,
        c.microdc_usd,
        c.operating_usd
    from work as w
    join reconciled as r using (site_id)
    join costs as c using (site_id)
),

final as (
    select
        p.site_id,
        s.baseline_region,
        p.pilot_days,
        p.requests,
        p.microdc_usd as pilot_microdc_usd,
        p.microdc_usd * p.months_factor as microdc_usd_per_month,
        p.operating_usd * p.months_factor as operating_usd_per_month,
        (p.core_hours * s.baseline_usd_per_core_hour + p.egress_gb * s.baseline_egress_usd_per_gb)
            * p.months_factor as cloud_usd_per_month,
        p.core_hours * p.months_factor as core_hours_per_month,
        p.egress_gb * p.months_factor as egress_gb_per_month,
        s.baseline_usd_per_core_hour,
        s.baseline_egress_usd_per_gb,
        i.investment_usd,
        6 * microdc_usd_per_month as microdc_usd_6m,
        6 * cloud_usd_per_month as cloud_usd_6m,
        12 * microdc_usd_per_month as microdc_usd_12m,
        12 * cloud_usd_per_month as cloud_usd_12m,
        cloud_usd_per_month - operating_usd_per_month as monthly_savings_usd,
        case when monthly_savings_usd > 0 then i.investment_usd / monthly_savings_usd end
            as payback_months,
        (6 * monthly_savings_usd - i.investment_usd) / nullif(i.investment_usd, 0) * 100
            as roi_6m_pct,
        (12 * monthly_savings_usd - i.investment_usd) / nullif(i.investment_usd, 0) * 100
            as roi_12m_pct,
        l.latency_p50_ms,
        l.latency_p95_ms,
        s.baseline_rtt_ms,
        l.latency_p50_ms + s.baseline_rtt_ms as baseline_latency_p50_ms,
        l.latency_p95_ms + s.baseline_rtt_ms as baseline_latency_p95_ms,
        p.facility_wh / nullif(p.requests, 0) as facility_wh_per_request,
        (p.attributed_it_wh * s.baseline_pue + p.egress_gb * 0.001 * 1000)
            / nullif(p.requests, 0) as baseline_wh_per_request,
        p.gco2e / nullif(p.requests, 0) as gco2e_per_request,
        baseline_wh_per_request / 1000 * s.baseline_grid_gco2e_per_kwh
            as baseline_gco2e_per_request,
        s.baseline_pue,
        s.baseline_grid_gco2e_per_kwh,
        i.provisioned_cores,
        i.provisioned_cores * s.baseline_usd_per_core_hour * 730.5
            + p.egress_gb * s.baseline_egress_usd_per_gb * p.months_factor
            as cloud_capacity_usd_per_month,
        cloud_capacity_usd_per_month - operating_usd_per_month as capacity_monthly_savings_usd,
        case
            when capacity_monthly_savings_usd > 0
                then i.investment_usd / capacity_monthly_savings_usd
        end as capacity_payback_months,
        (12 * capacity_monthly_savings_usd - i.investment_usd) / nullif(i.investment_usd, 0) * 100
            as capacity_roi_12m_pct
    from per_month as p
    join sites as s using (site_id)
    join investment as i using (site_id)
    left join latency as l using (site_id)
)

select * from final
