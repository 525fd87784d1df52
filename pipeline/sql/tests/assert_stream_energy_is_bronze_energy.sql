-- Invariant: per node-minute, the stream's IT energy (all services plus __idle__) equals the
-- recomputation from bronze node telemetry within the stream's rounding (the macro `microdc
-- quality check` runs). A site-month with a mismatched node-minute is a failure.
with

conservation as (
    {{ node_energy_conservation() }}
),

final as (
    select * from conservation where mismatched > 0
)

select * from final
