-- Invariant: per site and site-local month, the chargeback's facility kWh = what the facility
-- meter metered + node IT x design PUE over the minutes without a usable meter
-- (fct_meter_reconciliation_monthly), to rounding (1e-6 + 1e-9 x |expected|). A row returned is a
-- failure.
with

reconciliation as (
    select * from {{ ref('fct_meter_reconciliation_monthly') }}
),

final as (
    select
        site_id,
        local_month,
        expected_facility_energy_kwh,
        chargeback_facility_energy_kwh,
        difference_kwh
    from reconciliation
    where
        difference_kwh is null
        or abs(difference_kwh) > 1e-6 + 1e-9 * abs(expected_facility_energy_kwh)
)

select * from final
