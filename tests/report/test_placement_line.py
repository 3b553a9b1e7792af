"""The run report's placement line: every worker's and role actor's node, from metrics.placement."""

from fnsft.report.placement import placement_line


def test_placement_line_names_each_rank_and_role_replica():
    metrics = {"placement": {
        "workers": [{"rank": 0, "node_id": "aaaaaa111", "ip": "10.0.0.1"},
                    {"rank": 1, "node_id": "bbbbbb222", "ip": "10.0.0.2"}],
        "roles": {"generation": [{"replica": 0, "node_id": "cccccc333", "ip": "10.0.0.3"}]}}}
    assert placement_line(metrics) == ("rank 0 @ 10.0.0.1/aaaaaa, rank 1 @ 10.0.0.2/bbbbbb; "
                                       "generation 0 @ 10.0.0.3/cccccc")


def test_no_placement_no_line():
    assert placement_line({}) == "" and placement_line({"placement": "?"}) == ""
