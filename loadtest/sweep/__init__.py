"""One sweep engine: points (axes of values, crossed or zipped), plans that say which point
comes next (a grid whose lines stop at a failing point, or a search for the highest passing
value), and the loop that measures them in order and can pick up where it left off.
`loadtest compare` sweeps loads with it in virtual time; `loadtest suite` sweeps live."""
