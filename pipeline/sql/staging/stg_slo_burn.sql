-- Grain: one row per minute x service x site (site __all__ = the service everywhere).
-- SLO burn rates from the lake (silver), one row per natural key (re-emissions dropped).
-- @column availability_burn: burn rate per window (5m ... 3d), availability SLI
-- @column latency_burn: burn rate per window (5m ... 3d), latency SLI
with

source as (
    select * from {{ source('silver', 'slo_burn') }}
),

deduplicated as (
    {{ dedup('source', 'key') }}
),

final as (
    select
        key,
        window_start,
        service,
        site_id,
        requests,
        bad_availability,
        bad_latency,
        availability_burn,
        latency_burn,
        availability_budget_remaining,
        latency_budget_remaining
    from deduplicated
)

select * from final
