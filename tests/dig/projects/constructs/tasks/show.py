import digdag


def locals_in_order(first, second):
    print("first=%s second=%s" % (first, second))


def store_greeting():
    digdag.env.store({"greeting": "stored hello"})
