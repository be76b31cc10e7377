"""``market-dashboard-loadtest``: many real clients against a running dashboard, with a
report of what they received and how soon."""
