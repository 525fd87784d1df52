"""Collectors: what sites already run (BMCs, exporters, PDUs) -> contract records (DESIGN.md §10).

`readings` is the shape every source reader returns, `counters` turns cumulative counters into
mean rates over the interval between two readings (resets and wraparound detected). The source
readers (`redfish`, `prometheus`, ...) do the I/O; everything else here is pure.
"""
