import digdag


def compute(count):
    numbers = list(range(1, int(count) + 1))
    digdag.env.store({"numbers": numbers, "total": sum(numbers), "note": "from python"})
