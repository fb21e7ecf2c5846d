import digdag


def locals_in_order(first, second):
    print(f"first={first} second={second}")


def store_greeting():
    digdag.env.store({"greeting": "stored hello"})
