import re

import digdag


class Codecs:
    def lz4(self):
        digdag.env.store({"file_lz4": "data.lz4", "bytes_lz4": 12})

    # The two zstd tasks store the same keys: in Digdag the later sibling wins.
    def zstd_fast(self):
        digdag.env.store({"file_zstd": "data.fast.zst", "bytes_zstd": 9})

    def zstd_best(self):
        digdag.env.store({"file_zstd": "data.best.zst", "bytes_zstd": 7})

    def pick(self, **params):
        best = None
        for key, value in sorted(params.items()):
            match = re.match("bytes_(.*)", key)
            if match and (best is None or value < best[0]):
                best = (value, params["file_" + match.group(1)])
        digdag.env.store({"chosen": best[1]})


def report(chosen):
    print("chosen file: " + chosen)
