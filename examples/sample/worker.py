"""The sample's worker: no port, just work in the background."""
import time

n = 0
while True:
    n += 1
    print(f"worker: tick {n}", flush=True)
    time.sleep(5)
