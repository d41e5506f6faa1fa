"""The hello function for Google's Functions Framework (Python)."""


def hello(request):
    return "Hello from Nimbus!\n"
