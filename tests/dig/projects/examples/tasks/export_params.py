import digdag


def put_value():
    digdag.env.store({"settings": {"mode": "fast", "level": 3}})


def show_value(settings):
    print("settings = " + str(settings))
