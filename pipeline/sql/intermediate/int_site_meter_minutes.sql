-- Grain: one row per site x UTC minute (natural key `key`, as stg_site_minutes).
-- What the facility meter says about each site-minute, and how the chargeback must follow it.
-- The stream charges each node row its IT energy x PUE (facility / metered IT). The metered IT
-- load no node reported (switches, routers, storage, PDU losses) and its share of the overhead
-- reach no node row; here they become the minute's shared infrastructure energy:
-- `metered` minutes (a valid meter, metered IT >= node IT): shared IT = metered IT - node IT,
-- shared facility = shared IT x PUE, so node rows + shared = the metered facility energy.
-- `meter_below_nodes` (a valid meter whose IT reading is below the node sum: meter drift, or a
-- node outside the meter): no shared energy (never negative); the node rows are scaled by
-- `node_facility_scale` = metered facility / (node IT x PUE), so they sum to what the meter
-- metered, and `nodes_over_meter_it_wh` reports the gap. `design` and `invalid_meter` minutes
-- (no usable meter): the rows keep node IT x design PUE, no shared energy, shown apart as
-- design-PUE energy.
-- @column meter_status: metered, meter_below_nodes, design (no meter) or invalid_meter (rejected)
-- @column is_metered: the minute's facility energy comes from the meter (metered or meter_below_nodes)
-- @column shared_it_energy_wh: metered IT energy no node reported, Wh (0 unless metered)
-- @column shared_facility_energy_wh: shared IT energy x PUE, Wh
-- @column shared_operational_gco2e: shared facility energy x the minute's grid and on-site renewable mix, g
-- @column node_facility_scale: factor on the node rows' facility energy and operational carbon (below 1 only for meter_below_nodes)
-- @column nodes_over_meter_it_wh: node IT energy above the meter's IT reading, Wh (meter_below_nodes only)
-- @column billed_facility_energy_wh: the meter's facility energy, or node IT x design PUE where no meter counts
{{ config(materialized='table') }}

with

site_minutes as (
    select * from {{ ref('stg_site_minutes') }}
),

fleet as (
    select onsite_renewable_gco2e_per_kwh from {{ source('fleet', 'dim_fleet') }}
),

classified as (
    select
        *,
        case
            when pue_source <> 'metered' then pue_source
            when node_it_energy_wh > metered_it_energy_wh then 'meter_below_nodes'
            else 'metered'
        end as meter_status
    from site_minutes
),

final as (
    select
        c.key,
        c.window_start,
        c.site_id,
        c.meter_status,
        c.meter_status in ('metered', 'meter_below_nodes') as is_metered,
        c.pue,
        c.metered_facility_energy_wh,
        c.metered_it_energy_wh,
        c.node_it_energy_wh,
        c.renewable_share,
        c.grid_intensity_gco2e_per_kwh,
        case
            when c.meter_status = 'metered' then c.metered_it_energy_wh - c.node_it_energy_wh
            else 0.0
        end as shared_it_energy_wh,
        case
            when c.meter_status = 'metered'
                then (c.metered_it_energy_wh - c.node_it_energy_wh) * c.pue
            else 0.0
        end as shared_facility_energy_wh,
        case
            when c.meter_status = 'metered'
                then (c.metered_it_energy_wh - c.node_it_energy_wh) * c.pue / 1000
                * (
                    (1 - c.renewable_share) * c.grid_intensity_gco2e_per_kwh
                    + c.renewable_share * f.onsite_renewable_gco2e_per_kwh
                )
            else 0.0
        end as shared_operational_gco2e,
        case
            when c.meter_status = 'meter_below_nodes' and c.node_it_energy_wh * c.pue > 0
                then c.metered_facility_energy_wh / (c.node_it_energy_wh * c.pue)
            else 1.0
        end as node_facility_scale,
        case
            when c.meter_status = 'meter_below_nodes'
                then c.node_it_energy_wh - c.metered_it_energy_wh
            else 0.0
        end as nodes_over_meter_it_wh,
        case
            when c.meter_status in ('metered', 'meter_below_nodes') then c.metered_facility_energy_wh
            else c.node_it_energy_wh * c.pue
        end as billed_facility_energy_wh
    from classified as c
    cross join fleet as f
)

select * from final
