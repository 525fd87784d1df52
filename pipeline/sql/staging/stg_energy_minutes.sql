-- Grain: one row per minute x node x service (natural key `key`).
-- Energy minutes from the lake (silver), one row per natural key: a minute the stream emitted
-- again after a failover (identical values) is kept once, the earliest landed.
-- @column key: natural key, window start | node | service
-- @column window_start: start of the UTC minute
-- @column service: service, or __idle__ for the node's idle energy
-- @column it_energy_wh: IT energy attributed to the row, Wh
-- @column facility_energy_wh: IT energy x PUE, Wh
-- @column operational_gco2e: facility energy x grid (and on-site renewable) intensity, g
-- @column embodied_gco2e: node embodied carbon time share, g
with

source as (
    select * from {{ source('silver', 'energy_minutes') }}
),

deduplicated as (
    {{ dedup('source', 'key') }}
),

final as (
    select
        key,
        window_start,
        site_id,
        node_id,
        service,
        team,
        requests,
        errors_5xx,
        slow,
        busy_ms,
        bytes_in,
        bytes_out,
        it_energy_wh,
        facility_energy_wh,
        pue,
        pue_source,
        coverage,
        grid_intensity_gco2e_per_kwh,
        intensity_source,
        renewable_share,
        operational_gco2e,
        embodied_gco2e,
        latency_p50_ms,
        latency_p95_ms,
        latency_p99_ms
    from deduplicated
)

select * from final
