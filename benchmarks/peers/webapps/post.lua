-- wrk script for benchmarks/web.py: every request a POST of a small JSON body.
wrk.method = "POST"
wrk.body = '{"n": 1}'
wrk.headers["Content-Type"] = "application/json"
