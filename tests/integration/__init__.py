"""
Integration group: the real server process driven by real peers and
protocol clients. Runs when RAPIDA_INTEGRATION=1 (set by .ci/test-all).
"""
