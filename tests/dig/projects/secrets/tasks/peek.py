import os

import digdag


def length():
    # the secret arrives in the environment, not in the params
    digdag.env.store(
        {"password_length": len(os.environ["DB_PASSWORD"]), "in_params": "DB_PASSWORD" in digdag.env.params}
    )
    print("python sees", os.environ["DB_PASSWORD"])
