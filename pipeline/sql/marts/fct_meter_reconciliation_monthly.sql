-- Grain: one row per site x site-local calendar month.
-- The chargeback against the facility meter, the table finance checks the utility bill with:
-- what the meter metered, the design-PUE energy of the minutes without a usable meter (shown
-- apart), what the node rows carried (node IT x PUE, as the stream computes them), the shared
-- infrastructure energy (metered IT load no node reported, and its overhead), the minutes whose
-- meter IT reading is below the node sum (reported: charged at the meter's facility energy),
-- and what fct_chargeback_monthly charged. chargeback = meter + design PUE, to rounding.
-- @column minutes: site-minutes of the month
-- @column metered_minutes: minutes whose facility energy comes from the meter
-- @column design_pue_minutes: minutes without a usable meter (no meter, or a rejected reading)
-- @column meter_below_nodes_minutes: metered minutes whose meter IT reading is below the node sum
-- @column meter_facility_energy_kwh: facility energy the meter metered, kWh
-- @column meter_it_energy_kwh: IT energy the meter metered, kWh
-- @column node_it_energy_kwh: IT energy the nodes reported, kWh
-- @column node_facility_energy_kwh: node IT x the minute's PUE (the stream's rows before the meter), kWh
-- @column shared_it_energy_kwh: metered IT energy no node reported, kWh
-- @column shared_facility_energy_kwh: shared IT energy x PUE, kWh
-- @column nodes_over_meter_it_kwh: node IT energy above the meter's IT reading, kWh
-- @column design_pue_facility_energy_kwh: node IT x design PUE over the minutes without a usable meter, kWh
-- @column expected_facility_energy_kwh: meter + design-PUE energy: what the chargeback must charge, kWh
-- @column chargeback_facility_energy_kwh: facility energy of fct_chargeback_monthly's rows, kWh
-- @column difference_kwh: chargeback - expected, kWh
-- @column shared_pct: shared facility energy / expected facility energy x 100
{{ config(materialized='table') }}

with

meters as (
    select * from {{ ref('int_site_meter_minutes') }}
),

prices as (
    select site_id, window_start, local_month from {{ ref('int_site_minute_prices') }}
),

chargeback as (
    select site_id, local_month, sum(facility_energy_kwh) as kwh
    from {{ ref('fct_chargeback_monthly') }}
    group by all
),

monthly as (
    select
        m.site_id,
        p.local_month,
        count(*) as minutes,
        count(*) filter (where m.is_metered) as metered_minutes,
        count(*) filter (where not m.is_metered) as design_pue_minutes,
        count(*) filter (where m.meter_status = 'meter_below_nodes') as meter_below_nodes_minutes,
        coalesce(sum(m.metered_facility_energy_wh) filter (where m.is_metered), 0) / 1000
        as meter_facility_energy_kwh,
        coalesce(sum(m.metered_it_energy_wh) filter (where m.is_metered), 0) / 1000
        as meter_it_energy_kwh,
        sum(m.node_it_energy_wh) / 1000 as node_it_energy_kwh,
        sum(m.node_it_energy_wh * m.pue) / 1000 as node_facility_energy_kwh,
        sum(m.shared_it_energy_wh) / 1000 as shared_it_energy_kwh,
        sum(m.shared_facility_energy_wh) / 1000 as shared_facility_energy_kwh,
        sum(m.nodes_over_meter_it_wh) / 1000 as nodes_over_meter_it_kwh,
        coalesce(sum(m.billed_facility_energy_wh) filter (where not m.is_metered), 0) / 1000
        as design_pue_facility_energy_kwh
    from meters as m
    join prices as p using (site_id, window_start)
    group by all
),

final as (
    select
        m.*,
        m.meter_facility_energy_kwh + m.design_pue_facility_energy_kwh
        as expected_facility_energy_kwh,
        coalesce(c.kwh, 0) as chargeback_facility_energy_kwh,
        coalesce(c.kwh, 0) - expected_facility_energy_kwh as difference_kwh,
        m.shared_facility_energy_kwh / nullif(expected_facility_energy_kwh, 0) * 100
        as shared_pct
    from monthly as m
    left join chargeback as c using (site_id, local_month)
    order by m.site_id, m.local_month
)

select * from final
