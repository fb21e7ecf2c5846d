import digdag


def measure():
    digdag.env.store({"rows": 3})
