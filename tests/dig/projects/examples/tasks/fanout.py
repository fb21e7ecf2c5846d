import digdag


class Batches:
    def plan(self):
        digdag.env.store({"batch_count": 3})

    def spread(self, batch_count):
        digdag.env.export({"label": "batch"})
        for number in range(batch_count):
            digdag.env.add_subtask(Batches.handle, number=number)
        digdag.env.subtask_config["_parallel"] = True

    def handle(self, number, label):
        # digdag.env, bound when this module was imported, is the running subtask's
        print(f"{label} {number} handled ({digdag.env.params['number']})")
        digdag.env.store({"last_handled": number, f"handled_{number}": True})


def summary(last_handled, handled_0, handled_2):
    print(f"last handled: {last_handled}; first and last: {handled_0} {handled_2}")
