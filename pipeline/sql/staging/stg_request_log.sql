-- Grain: one row per request (request_id); a record delivered twice is kept once.
-- Validated request logs from the lake (bronze). client_ip is never here: client_ip_hmac is
-- its keyed hash (or null).
-- @column finished_at: when the request finished (UTC)
-- @column latency_ms: server-side latency, ms
with

source as (
    select * from {{ source('bronze', 'request_log') }}
),

deduplicated as (
    {{ dedup('source', 'request_id', order_by='_partition, _offset') }}
),

final as (
    select
        request_id,
        finished_at,
        site_id,
        node_id,
        service,
        team,
        route,
        status,
        latency_ms,
        bytes_in,
        bytes_out,
        client_region,
        client_ip_hmac
    from deduplicated
)

select * from final
