-- Grain: one row per site x local calendar day (the site's time zone).
-- Site efficiency by day: PUE, CUE, WUE, renewable share and telemetry coverage, each re-derived
-- from the day's energy sums (sum/sum).
-- @column local_date: calendar day in the site's time zone
-- @column it_energy_kwh: IT energy the nodes reported, kWh
-- @column facility_energy_kwh: IT energy x the minute's PUE, kWh
-- @column pue: facility / IT energy of the day
-- @column design_pue_minutes: minutes without facility meters (the design PUE applied)
-- @column cue_kg_per_kwh: operational kgCO2e / IT kWh
-- @column wue_l_per_kwh: water litres / IT kWh (null without a water meter)
-- @column renewable_share: on-site renewable energy / facility energy
-- @column coverage: mean share of node-minutes with telemetry
{{ config(materialized='table') }}

with

minutes as (
    select * from {{ ref('stg_site_minutes') }}
),

sites as (
    select site_id, timezone from {{ source('fleet', 'dim_site') }}
),

localized as (
    select
        m.*,
        cast(timezone(s.timezone, m.window_start) as date) as local_date
    from minutes as m
    join sites as s using (site_id)
),

daily as (
    select
        site_id,
        local_date,
        count(*) as minutes,
        sum(node_it_energy_wh) / 1000 as it_energy_kwh,
        sum(node_it_energy_wh * pue) / 1000 as facility_energy_kwh,
        count(*) filter (where pue_source = 'design') as design_pue_minutes,
        sum(operational_gco2e) / 1000 as operational_kgco2e,
        sum(embodied_gco2e) / 1000 as embodied_kgco2e,
        sum(renewable_energy_wh) / 1000 as renewable_energy_kwh,
        sum(water_l) as water_l,
        avg(coverage) as coverage,
        cast(sum(requests) as bigint) as requests
    from localized
    group by all
),

final as (
    select
        site_id,
        local_date,
        minutes,
        requests,
        it_energy_kwh,
        facility_energy_kwh,
        facility_energy_kwh / nullif(it_energy_kwh, 0) as pue,
        design_pue_minutes,
        operational_kgco2e,
        embodied_kgco2e,
        operational_kgco2e / nullif(it_energy_kwh, 0) as cue_kg_per_kwh,
        water_l / nullif(it_energy_kwh, 0) as wue_l_per_kwh,
        renewable_energy_kwh / nullif(facility_energy_kwh, 0) as renewable_share,
        coverage
    from daily
)

select * from final
