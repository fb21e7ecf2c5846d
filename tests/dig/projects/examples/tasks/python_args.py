def needs_two(first, second):
    print("first = " + str(first))
    print("second = " + str(second))


def has_defaults(first=None, second="fallback"):
    print("first = " + str(first))
    print("second = " + str(second))


def some_defaults(first, second=None, third=None):
    print("first = " + str(first))
    print("second = " + str(second))
    print("third = " + str(third))


def takes_keywords(first, **kw):
    print("first = " + str(first))
    print("extra1 = " + str(kw.get("extra1")))
