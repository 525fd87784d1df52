-- The report: every site against its hyperscale baseline (fct_roi_site).
select
    site_id,
    baseline_region,
    pilot_days,
    requests,
    microdc_usd_per_month,
    operating_usd_per_month,
    cloud_usd_per_month,
    investment_usd,
    microdc_usd_6m,
    cloud_usd_6m,
    microdc_usd_12m,
    cloud_usd_12m,
    monthly_savings_usd,
    payback_months,
    roi_6m_pct,
    roi_12m_pct,
    latency_p95_ms,
    baseline_latency_p95_ms,
    facility_wh_per_request,
    baseline_wh_per_request,
    gco2e_per_request,
    baseline_gco2e_per_request,
    cloud_capacity_usd_per_month,
    capacity_payback_months,
    capacity_roi_12m_pct
from fct_roi_site
order by site_id
