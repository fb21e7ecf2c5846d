"""py> tasks of the example project (unchanged Digdag code: ``import digdag``)."""

import digdag


class MyWorkflow(object):
    def step1(self, greeting, count=1, session_date=None):
        # Arguments are bound by name from the task's params.
        print("py> step1: greeting=%s count=%s session_date=%s" % (greeting, count, session_date))
        numbers = list(range(1, int(count) + 1))
        digdag.env.store({"numbers": numbers, "total": sum(numbers)})
        digdag.env.store(message="%s, %d numbers" % (greeting, len(numbers)))
