-- Grain: one row per minute x site (natural key `key`).
-- Site minutes from the lake (silver), one row per natural key (re-emissions dropped).
-- @column pue: facility / IT energy of the minute (design PUE when pue_source = design)
-- @column node_it_energy_wh: IT energy the nodes reported, Wh
-- @column renewable_energy_wh: on-site renewable energy used, Wh
-- @column water_l: water used, litres (null without a water meter)
with

source as (
    select * from {{ source('silver', 'site_minutes') }}
),

deduplicated as (
    {{ dedup('source', 'key') }}
),

final as (
    select
        key,
        window_start,
        site_id,
        facility_energy_wh as metered_facility_energy_wh,
        it_energy_wh as metered_it_energy_wh,
        node_it_energy_wh,
        pue,
        pue_source,
        renewable_energy_wh,
        renewable_share,
        water_l,
        grid_intensity_gco2e_per_kwh,
        intensity_source,
        operational_gco2e,
        embodied_gco2e,
        requests,
        nodes_reporting,
        coverage,
        outdoor_temp_c
    from deduplicated
)

select * from final
