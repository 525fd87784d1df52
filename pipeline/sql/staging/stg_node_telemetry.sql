-- Grain: one row per node power sample (node, observed_at); a sample delivered twice is kept once.
-- Validated node telemetry from the lake (bronze): mean power over (observed_at - interval_s,
-- observed_at].
-- @column interval_start: observed_at - interval_s, the start of the sampled interval
-- @column power_w: mean power over the interval, W
with

source as (
    select * from {{ source('bronze', 'node_telemetry') }}
),

deduplicated as (
    {{ dedup('source', 'node_id, observed_at', order_by='_partition, _offset') }}
),

final as (
    select
        node_id,
        site_id,
        rack_id,
        observed_at - to_microseconds(cast(round(interval_s * 1e6) as bigint)) as interval_start,
        observed_at,
        interval_s,
        power_w,
        cpu_util,
        gpu_util,
        mem_util,
        inlet_temp_c,
        outlet_temp_c
    from deduplicated
)

select * from final
