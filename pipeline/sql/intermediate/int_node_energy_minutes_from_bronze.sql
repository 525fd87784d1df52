-- Grain: one row per node x UTC minute with telemetry.
-- Node IT energy per minute recomputed in SQL from the raw power samples (bronze), the batch
-- twin of the stream's stage 1: each sample's energy (power x duration) is split across the
-- minutes its interval overlaps. Used to check that stream and batch agree.
-- @column window_start: start of the UTC minute
-- @column it_energy_wh: energy of the samples' overlap with the minute, Wh
-- @column covered_s: seconds of the minute covered by samples
with

samples as (
    select * from {{ ref('stg_node_telemetry') }}
),

split as (
    select
        node_id,
        site_id,
        power_w,
        interval_start,
        observed_at,
        unnest(
            generate_series(
                date_trunc('minute', interval_start),
                date_trunc('minute', observed_at - interval 1 microsecond),
                interval 1 minute
            )
        ) as window_start
    from samples
),

overlap as (
    select
        node_id,
        site_id,
        window_start,
        power_w,
        epoch(
            least(observed_at, window_start + interval 1 minute)
            - greatest(interval_start, window_start)
        ) as seconds
    from split
),

final as (
    select
        node_id,
        site_id,
        window_start,
        sum(power_w * seconds) / 3600 as it_energy_wh,
        sum(seconds) as covered_s
    from overlap
    group by all
)

select * from final
