-- Invariant: per site and site-local month, the chargeback's facility kWh and energy cost equal
-- the facility meter's own (silver site minutes: metered kWh + design-PUE kWh of the minutes
-- without a usable meter, the grid share at each minute's tariff), to rounding - computed from
-- the meter, not from the rows the chargeback is built of (the macro `microdc quality check`
-- runs). A site-month returned is a failure.
with

reconciled as (
    {{ chargeback_against_meter() }}
),

final as (
    select *
    from reconciled
    where
        actual_kwh is null
        or expected_kwh is null
        or abs(actual_kwh - expected_kwh) > 1e-6 + 1e-9 * abs(expected_kwh)
        or abs(actual_usd - expected_usd) > 1e-6 + 1e-9 * abs(expected_usd)
)

select * from final
